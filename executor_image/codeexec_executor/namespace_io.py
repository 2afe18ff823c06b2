"""Save and load a session's namespace with pickle: the portable snapshot method.

The host runs ``save(globals(), path)`` (and later ``load(globals(), path)``) as a
cell, then moves the file with ``docker exec``. Each name is pickled on its own,
so one object that cannot be pickled (a socket, a thread, a generator, an open
file, a lambda) costs only that name: it is reported with the reason, never
silently dropped. Modules are kept by name and imported again on load.
Standard library only, Python 3.9 syntax.
"""

import json
import pickle
import sys
import types

SKIP = ("__builtins__", "__loader__", "__spec__")


def _reason(exc):
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def save(namespace, path):
    """Pickle every name of ``namespace`` into ``path``; a JSON report of what was not.

    The file is a sequence of pickled records, one per name, written as they are
    made: the memory needed is one object's pickle at a time, not the namespace's.
    """
    saved, modules, unsaved = [], {}, {}
    with open(path, "wb") as fh:
        for name, value in list(namespace.items()):
            if name in SKIP:
                continue
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
                pickle.dump(("module", name, value.__name__), fh, protocol=4)
                continue
            if getattr(value, "__module__", None) == "__main__" and isinstance(
                value, (type, types.FunctionType)
            ):
                # pickle keeps only a reference to "__main__.<name>", which a new
                # session does not have: say so now instead of failing at load.
                unsaved[name] = "defined in the session: run its definition again"
                continue
            try:
                blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - any failure is reported per name
                unsaved[name] = _reason(exc)
                continue
            pickle.dump(("value", name, blob), fh, protocol=4)
            saved.append(name)
            del blob
    return json.dumps({"saved": sorted(saved), "modules": modules, "unsaved": unsaved})


def load(namespace, path):
    """Put the names saved in ``path`` back into ``namespace``; a JSON report of failures."""
    loaded, failed = [], {}
    with open(path, "rb") as fh:
        while True:
            try:
                kind, name, data = pickle.load(fh)
            except EOFError:
                break
            try:
                if kind == "module":
                    __import__(data)
                    namespace[name] = sys.modules[data]
                else:
                    namespace[name] = pickle.loads(data)
                loaded.append(name)
            except Exception as exc:  # noqa: BLE001
                failed[name] = _reason(exc)
    return json.dumps({"loaded": sorted(loaded), "failed": failed})
