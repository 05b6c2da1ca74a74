"""importlib.metadata replacements for mmengine's pkg_resources helpers (gone in setuptools>=82)."""
import importlib.util
import os.path as osp
import sys
from importlib import metadata

# Modules that bind these helpers by name (``from ... import is_installed``).
_TARGETS = ('mmengine.utils.package_utils', 'mmengine.utils', 'mmengine.config.config',
            'mmengine.hub.hub')


def pkg_resources_missing() -> bool:
    """True when ``import pkg_resources`` would fail."""
    try:
        return importlib.util.find_spec('pkg_resources') is None
    except ValueError:  # sys.modules entry without a spec
        return sys.modules.get('pkg_resources') is None


def is_installed(package: str) -> bool:
    """Whether ``package`` is an installed distribution or an importable module."""
    try:
        metadata.distribution(package)
        return True
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def package2module(package: str) -> str:
    """Top-level module name of an installed distribution (``mmsegmentation`` -> ``mmseg``)."""
    dist = metadata.distribution(package)
    top_level = (dist.read_text('top_level.txt') or '').split()
    if top_level:
        return top_level[0]
    name = dist.metadata['Name']
    for module, dists in metadata.packages_distributions().items():
        if name in dists:
            return module
    raise ValueError(f'can not infer the module name of {package}')


def get_installed_path(package: str) -> str:
    """Directory of an installed package, given its distribution or module name."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise
        if spec.origin is None:
            raise RuntimeError(f'{package} is a namespace package, which is invalid '
                               'for `get_installed_path`') from None
        return osp.dirname(spec.origin)
    location = str(dist.locate_file(''))
    if osp.exists(osp.join(location, package)):
        return osp.join(location, package)
    module = package2module(package)
    spec = importlib.util.find_spec(module)  # also finds editable installs
    if spec is not None and spec.origin is not None:
        return osp.dirname(spec.origin)
    return osp.join(location, module)


def apply(force: bool = False) -> bool:
    """Swap mmengine's pkg_resources-based helpers when pkg_resources is missing (or ``force``).

    Returns True when the replacements are installed.
    """
    if not (force or pkg_resources_missing()):
        return False
    import mmengine.utils.package_utils  # noqa: F401  (loads mmengine.utils too)
    helpers = {'is_installed': is_installed, 'get_installed_path': get_installed_path,
               'package2module': package2module}
    for target in _TARGETS:
        module = sys.modules.get(target)
        for name, func in helpers.items():
            if module is not None and hasattr(module, name):
                setattr(module, name, func)
    return True
