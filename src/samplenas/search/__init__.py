"""Stage 2: search strategies, the archive of evaluations, Pareto utilities."""

from samplenas.search.archive import Archive
from samplenas.search.evolution import EvolutionSampler
from samplenas.search.pareto import best_per_bucket, pareto_front

__all__ = ["Archive", "EvolutionSampler", "best_per_bucket", "pareto_front"]
