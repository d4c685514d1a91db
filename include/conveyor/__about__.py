"""The package version, in one place: the build (hatch), ``conveyor.__version__`` and the
provider info all read it."""

__version__ = "0.2.0"
