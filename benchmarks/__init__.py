"""packeteer_trio against its nearest peers: ``python -m benchmarks [NAME ...]``.

One module per comparison (streams, pipes, datagrams, anyio_layer, relay,
scheduler, scaling); each has ``run(config) -> list[Row]``. See README.md.
"""
