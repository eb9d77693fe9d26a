# CPython stand-ins for the MicroPython modules the firmware uses (micropython.const, cryptolib's AES-ECB),
# installed by cnode/__init__.py only when `micropython` is missing: never loaded on a node.
import sys


class _MicroPythonShim:
    """`from micropython import const` and the decorators the firmware may use, as no-ops."""

    @staticmethod
    def const(x):
        return x

    @staticmethod
    def native(f):
        return f

    @staticmethod
    def viper(f):
        return f

    @staticmethod
    def schedule(fn, arg):
        """A soft interrupt: runs at once here (micropython-lib's lora modem schedules its "soft ISR")."""
        fn(arg)
        return True


sys.modules["micropython"] = _MicroPythonShim  # type: ignore


class _CryptolibShim:
    """`cryptolib.aes(key, 1)` (ECB only) on top of the `cryptography` package, with MicroPython's rules:
    16-byte blocks, optional out buffer, and one direction per object (mixing raises ValueError)."""

    class aes:
        def __init__(self, key, mode, iv=None):
            if mode != 1:
                raise ValueError("mode")  # the shim covers ECB; MicroPython's ESP32 port also has CBC
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            self._c = Cipher(algorithms.AES(bytes(key)), modes.ECB())
            self._dir = 0

        def _run(self, d, src, out):
            if self._dir not in (0, d):
                raise ValueError("can't encrypt & decrypt")
            self._dir = d
            if len(src) % 16:
                raise ValueError("blksize")
            ctx = self._c.encryptor() if d == 1 else self._c.decryptor()
            r = ctx.update(bytes(src)) + ctx.finalize()
            if out is None:
                return r
            out[:len(r)] = r
            return out

        def encrypt(self, src, out=None):
            return self._run(1, src, out)

        def decrypt(self, src, out=None):
            return self._run(2, src, out)


if "cryptolib" not in sys.modules:
    try:
        import cryptolib  # noqa: F401
    except ImportError:
        sys.modules["cryptolib"] = _CryptolibShim  # type: ignore
