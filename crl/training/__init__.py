"""The trainer, one job per module (``crl.trainer`` re-exports the names other code imports):

    loop.py       ContinualTrainer: walk the blocks, learn, end each task, evaluate every game
    agent.py      build the agent (and pick its device) from a resolved configuration
    state.py      RunState: the trainer's position in the sequence and its history
    callbacks.py  what runs at each training step, one SB3 callback per purpose
    recording.py  Recorder: evals.jsonl, blocks.jsonl, retention.csv, metrics.json, TensorBoard
    resume.py     what a checkpoint holds, continuing a run from one, the configuration a resume trains with
    console.py    the progress line and the stop signals
    task_identity.py  FMN's probe that names a block's task

This file imports nothing: ``crl.cli`` imports ``resume`` before any input is checked, without matplotlib.
"""
