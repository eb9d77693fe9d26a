"""The architecture's boundaries, read from every module's imports (ast): the firmware never imports the host
package; no module on the node but main.py imports `machine` (hardware is passed in), and no driver even names
it; no host library module imports the CLI layer; library code raises InputError, never the CLI's UsageError."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
HOST = ROOT / "host_tools" / "citynode"


def _module(path: Path, base: Path, package: str) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = [package, *rel.parts] if package else list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved; `from x import y` gives x and
    x.y, since y may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def firmware_modules():
    return [(p, _module(p, FIRMWARE, "")) for p in sorted(FIRMWARE.rglob("*.py"))]


def host_modules():
    return [(p, _module(p, HOST, "citynode")) for p in sorted(HOST.rglob("*.py"))]


def is_cli(module: str) -> bool:
    """The CLI layer: citynode.cli (a module or a package) and the command modules."""
    parts = module.split(".")
    return len(parts) > 1 and (parts[1] in ("cli", "cli_reference") or parts[1].startswith("cmd_"))


def test_the_walker_sees_what_it_must():
    assert len(firmware_modules()) > 40 and len(host_modules()) > 40
    assert any("citynode.errors" in imports(p, m) for p, m in host_modules() if is_cli(m))
    assert "cnode.bits" in imports(FIRMWARE / "cnode" / "encoder.py", "cnode.encoder")


def test_the_firmware_never_imports_the_host_package():
    bad = [(m, i) for p, m in firmware_modules() for i in imports(p, m) if i.split(".")[0] == "citynode"]
    assert not bad, bad


def test_only_main_py_imports_machine_and_no_driver_names_it():
    bad = [m for p, m in firmware_modules() if m != "main" and any(i.split(".")[0] == "machine"
                                                                   for i in imports(p, m))]
    assert not bad, f"hardware is passed in, not imported: {bad}"
    named = [p.name for p in sorted((FIRMWARE / "cnode" / "drivers").rglob("*.py"))
             if any(isinstance(n, ast.Name) and n.id == "machine" for n in ast.walk(ast.parse(p.read_text())))]
    assert not named, f"a driver is given its bus, never machine: {named}"


def test_no_library_module_imports_the_cli_layer():
    bad = [(m, i) for p, m in host_modules() if not is_cli(m) for i in imports(p, m)
           if i.startswith("citynode.") and is_cli(i)]
    assert not bad, bad


def test_library_code_raises_input_error_not_usage_error():
    bad = []
    for p, m in host_modules():
        if is_cli(m) or m == "citynode.errors":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Name) and node.id == "UsageError":
                bad.append(f"{m}:{node.lineno}")
    assert not bad, f"library modules raise errors.InputError (the CLI exits 2 for it too): {bad}"
