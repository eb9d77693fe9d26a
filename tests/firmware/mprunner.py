# Runs firmware test modules under the MicroPython unix port: every test_* function, one JSON line each.
# Usage: micropython tests/firmware/mprunner.py MODULE [MODULE ...]   (with MICROPYPATH set by the caller)
import sys
import json

passed = 0
failed = 0
for modname in sys.argv[1:]:
    try:
        mod = __import__(modname)
    except Exception as e:  # an import failure fails every test of the module
        print(json.dumps({"module": modname, "test": "*", "ok": False, "err": "import: %r" % (e,)}))
        failed += 1
        continue
    for name in sorted(dir(mod)):
        if not name.startswith("test_"):
            continue
        fn = getattr(mod, name)
        try:
            fn()
            ok, err = True, ""
            passed += 1
        except Exception as e:
            ok, err = False, "%s: %s" % (type(e).__name__, e)
            failed += 1
            sys.print_exception(e)
        print(json.dumps({"module": modname, "test": name, "ok": ok, "err": err}))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
