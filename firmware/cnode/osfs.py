# The board's own filesystem as an `fs` object (os calls plus the builtin open), for queue.py and config.py.
#
# Modules that touch flash take an `fs` with open/rename/remove/listdir/stat/mkdir; on a board pass this module,
# in tests pass citynode.hwsim.flashfs.FlashFS (which can also lose power at any write boundary).
import os
from builtins import open  # noqa: F401  (re-exported: fs.open)

rename = os.rename
remove = os.remove
listdir = os.listdir
stat = os.stat
mkdir = os.mkdir
