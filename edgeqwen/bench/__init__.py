"""Speed: how fast a bundle decodes here, how fast it could, and what to expect on its target.

    bandwidth.py  this host's memory read bandwidth, measured
    traffic.py    bytes of weights a model reads per decoded token (from its files, or from a plan)
    measure.py    timed runs of any model folder in a child process (a bundle through its shim's worker mode),
                  summarised
    pytorch_worker.py  the timed loop for a Hugging Face checkpoint in PyTorch, the float32 reference
"""
