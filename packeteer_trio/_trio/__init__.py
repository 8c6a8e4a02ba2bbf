"""The trio face: trio's waits and resource errors over the shared I/O core.

- :mod:`._abc`: the public types the verbs return (Stream, Listener,
  DatagramSocket, DatagramChannel), abstract;
- :mod:`._face`: the :class:`.._io.Face` this face hands the core;
- :mod:`._stream`, :mod:`._stream_windows`, :mod:`._listener`,
  :mod:`._datagram`, :mod:`._packet`: the classes over raw endpoints;
- :mod:`._wrapped`: the adapters of a user scheme's trio objects;
- :mod:`._opened`: which of those each opened thing becomes.
"""
