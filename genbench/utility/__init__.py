"""Downstream utility: classifiers trained on real, synthetic and mixed data (issue 18)."""

from genbench.utility.classifier import ClassifierConfig, classifier_config
from genbench.utility.experiment import Labelled, UtilityConfig, run_utility

__all__ = ["ClassifierConfig", "Labelled", "UtilityConfig", "classifier_config", "run_utility"]
