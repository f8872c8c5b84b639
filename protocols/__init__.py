"""Sans-I/O wire-protocol codecs. Nothing here touches sockets, files or clocks."""
