"""The anyio face's implementation; the public names live in ``anyio_compat``."""
