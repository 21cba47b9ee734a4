"""Third-party-style NumPy deep-learning code for the gradient checker's corpus (tests/test_check_corpus_real.py).

Written the way course and library code is written (activation classes with fn/grad/grad2, CS231n-style
forward/backward pairs passing a cache, a loss returning (loss, dx)), right and subtly wrong; the
independent ground truth is in :mod:`tests.gradcheck_corpus.truth` (mpmath, 50 digits).
"""
