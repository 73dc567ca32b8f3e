"""One run: its configuration, its sequence of blocks, the training loop, evaluation and the run directory.

    config.py        the typed configuration (one dataclass tree; each method's Params is a section)
    presets.py       named configurations (--preset)
    sequence.py      the blocks of a run: (game, steps) per cycle
    seeds.py         every seed derived from the run's seed
    loop.py          ContinualTrainer: walk the blocks, learn, end each task, evaluate every game
    agent.py         build the agent (and pick its device) from a resolved configuration
    state.py         RunState: the trainer's position in the sequence and its history
    callbacks.py     what runs at each training step, one SB3 callback per purpose
    recording.py     Recorder: evals.jsonl, blocks.jsonl, retention.csv, metrics.json, TensorBoard
    evaluation.py    evaluating every game of the sequence
    console.py       the progress line and the stop signals
    task_identity.py FMN's probe that names a block's task
    rundir.py        the run directory's files
    checkpoint.py    resume points on disk: the agent zip, RNG states, replay buffers, the trainer's state
    resume_point.py  what a resume point holds of the run, saving and restoring it

This file imports nothing: ``crl.cli`` imports the configuration before any input is checked, without torch.
"""
