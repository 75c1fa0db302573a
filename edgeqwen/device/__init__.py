"""The device check: a bundle run on its target's own instruction set, with the runtime installed the way
its README says, before the bundle ships.

    install.py        the ways to install a bundle's runtime on its device: the README prints them, the
                      check runs the one marked checked (one source of truth)
    environments.py   a Python with only that runtime, for the target's architecture: a fresh virtualenv
                      here, or an arm64 Debian userland under QEMU user-mode emulation of the target's core
    check.py          the check itself: the shim's answer, its server, and the drift on the device's
                      kernels against the build's reference and against the host's run of the same bundle
"""
