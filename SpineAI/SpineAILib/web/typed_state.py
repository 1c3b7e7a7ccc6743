"""A dataclass as a section's trame state, with the field names as the state names.

trame-server's ``TypedState`` names each state entry ``ClassName__field``; the web app keeps
its plain names (``load_message``, ``annot_tool``, ...) because the page's own script, the
browser tests and users' scripts read them. ``FlatState`` gives the same typed access:

* ``FlatState(state, LoadState)`` puts the dataclass's defaults into ``state`` (once);
* ``.data.load_message = "..."`` / ``.data.load_message`` set and read the state entry;
* ``.name.load_message`` is the state name, for widget bindings (``v_model=(ts.name.x,)``);
* ``.bind_changes({ts.name.x: callback})`` calls ``callback(value)`` when the entry changes
  (a tuple of names calls it with each value).

Values are kept as the JSON the browser exchanges (str, numbers, bool, lists, dicts).
"""

from dataclasses import MISSING, fields
from typing import Generic, TypeVar

T = TypeVar("T")


def defaults(dataclass_type):
    """{field name: default value} of a state dataclass (factories called)."""
    values = {}
    for f in fields(dataclass_type):
        if f.default is not MISSING:
            values[f.name] = f.default
        elif f.default_factory is not MISSING:
            values[f.name] = f.default_factory()
        else:
            raise TypeError(f"{dataclass_type.__name__}.{f.name}: a state field needs a default")
    return values


class _Names:
    def __init__(self, names):
        self.__dict__.update({name: name for name in names})


class _Data:
    """Attribute access to the state entries of one dataclass (unknown names are refused)."""

    def __init__(self, state, names):
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_names", frozenset(names))

    def __getattr__(self, name):
        if name not in self._names:
            raise AttributeError(name)
        return self._state[name]

    def __setattr__(self, name, value):
        if name not in self._names:
            raise AttributeError(f"{name} is not a field of this state")
        self._state[name] = value


class FlatState(Generic[T]):
    def __init__(self, state, dataclass_type: type[T], initialise=True):
        self.state = state
        self.type = dataclass_type
        self.defaults = defaults(dataclass_type)
        if initialise:
            state.update({k: v for k, v in self.defaults.items() if not state.has(k)})
        self.name: T = _Names(self.defaults)  # type: ignore[assignment]
        self.data: T = _Data(state, self.defaults)  # type: ignore[assignment]

    def update(self, **values):
        """Set several entries (each must be a field)."""
        unknown = set(values) - set(self.defaults)
        if unknown:
            raise AttributeError(f"not fields of {self.type.__name__}: {', '.join(sorted(unknown))}")
        self.state.update(values)

    def push(self, **values):
        """Set entries and send them to the browser now."""
        with self.state:
            self.update(**values)

    def reset(self, *names):
        """Put entries (all when none named) back to their defaults."""
        self.update(**{n: defaults(self.type)[n] for n in (names or self.defaults)})

    def bind_changes(self, change_dict):
        for keys, callback in change_dict.items():
            keys = tuple(keys) if isinstance(keys, (tuple, list)) else (keys,)

            def on_change(_keys=keys, _callback=callback, **values):
                return _callback(*(values.get(k, self.state[k]) for k in _keys))

            self.state.change(*keys)(on_change)
