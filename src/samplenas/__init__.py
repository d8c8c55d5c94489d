"""samplenas: neural architecture search where the sampler is a first-class part."""

from samplenas.errors import UserError
from samplenas.space import Arch, SearchSpace, list_spaces, load_space

__all__ = ["Arch", "SearchSpace", "UserError", "list_spaces", "load_space"]
__version__ = "0.1.0"
