"""The registered evaluations (evaluations/registry.py): importing the package registers each of them, in the
order of the tables' columns. A new evaluation is one file here plus one line below."""
from evaluations import linear, knn, label_free, detection  # noqa: F401,I001  (registration order: table order)
from evaluations import semisup  # noqa: F401,I001
from evaluations import voc07_svm, voc07_lowshot  # noqa: F401,I001  (Goyal et al.'s VOC07 SVMs)
from evaluations import linear_transfer  # noqa: F401,I001
