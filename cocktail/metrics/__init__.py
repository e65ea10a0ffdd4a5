"""FID, KID and precision/recall of a model, per class and on the union; Inception features cached by content.

``inception``: the network and its resize; ``statistics``: the numbers from two feature sets; ``features``:
the features of a source's samples or an image folder; ``cache``: where those are kept; ``evaluate``: a model
scored per class against its references; ``chart``: those scores drawn.
"""

from .chart import bar_chart
from .evaluate import METRICS, UNION, Evaluation, evaluate_model, source_references, union_features
from .features import features_for_folder, features_for_source
from .inception import EXTRACTOR_NAME, InceptionFeatures, inception_path, load_inception, shared_extractor
from .statistics import Scores, compare, fid, kid, precision_recall

__all__ = ["EXTRACTOR_NAME", "METRICS", "UNION", "Evaluation", "InceptionFeatures", "Scores", "bar_chart", "compare",
           "evaluate_model", "features_for_folder", "features_for_source", "fid", "inception_path", "kid",
           "load_inception", "precision_recall", "shared_extractor", "source_references", "union_features"]
