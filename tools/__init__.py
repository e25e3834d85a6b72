"""Scripts that need torch and the official code (not run by the tests), and the helpers
they share with the tests (:mod:`tools.official`, :mod:`tools.parity`)."""
