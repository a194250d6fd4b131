"""A name -> item mapping that answers an unknown name with the closest valid one."""
from transferkit.errors import TransferkitError, did_you_mean


class Registry(dict):
    """One registry per concept (backbones, baselines, strategies, ...).

    Example:
        >>> BACKBONES = Registry("backbone")
        >>> BACKBONES.register("vgg16", spec)
        >>> BACKBONES.get_or_raise("vgg61")   # TransferkitError: unknown backbone 'vgg61' (did you mean 'vgg16'?)
    """

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, name, item=None):
        """Register ``item`` under ``name``; without ``item``, works as a decorator."""
        if item is None:
            def decorator(obj):
                self[name] = obj
                return obj
            return decorator
        self[name] = item
        return item

    def get_or_raise(self, name):
        """The item called ``name``, or a TransferkitError naming the valid choices."""
        if name in self:
            return self[name]
        raise TransferkitError(
            f"unknown {self.kind} '{name}'{did_you_mean(name, self)}; choose one of: {', '.join(sorted(self))}"
        )
