"""Analysis of results, from numbers to numbers and figures; reads no run directory (``crl.report`` does):

    metrics.py        the retention matrix's metrics (forgetting, final scores, forward transfer, AUC)
    normalization.py  each family's normalized score (HNS for Atari, DQN-normalized for MinAtar)
    stats.py          statistics over seeds (IQM, bootstrap intervals)
    plots.py          retention heatmaps and return curves
    words.py          what a retention matrix says, in words
"""
