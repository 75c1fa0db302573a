"""Speed: how fast a bundle decodes here, how fast it could, and what to expect on its target.

    bandwidth.py  this host's memory read bandwidth, measured
    traffic.py    bytes of weights a model reads per decoded token (from its files, or from a plan)
    worker.py     the timed generation loop, one runtime per child process
    measure.py    runs the worker for any model folder and summarises the runs
"""
