"""Win32 error codes (winerror.h) that the Windows pipe code interprets.

Plain numbers, importable on every platform: :mod:`.schemes.pipe` turns them
into OSErrors (tested everywhere), :mod:`._win32` and the trio face's
:mod:`._trio._stream_windows` compare against them on Windows.
"""

ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_INVALID_NAME = 123
ERROR_BAD_PATHNAME = 161
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_PIPE_NOT_CONNECTED = 233
ERROR_MORE_DATA = 234
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997
ERROR_NOT_FOUND = 1168
