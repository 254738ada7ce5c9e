"""NeRF-VAE in JAX.

Importing the package sets one default for the process (``setdefault``: an exported value wins): OpenBLAS,
which runs JAX's LAPACK calls on the CPU (the factor prior's k x k Cholesky solves), uses one thread. XLA
already keeps every core busy with its own threads (one or more host devices); OpenBLAS's second thread then
waits for a core, and a 128 x 128 solve that takes 0.1 ms took 8-20 ms: the `tiny` training step on 2 host
devices took 504 ms against 450 ms with one thread (BENCHMARKS.md, "Where the factor prior's extra time
went"). It must be set before OpenBLAS loads (numpy's copy when
numpy is imported, scipy's at JAX's first LAPACK call): the entry points (``experiments``) and the tests'
conftest import this package first.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
