"""Interactive explorers of the course, for lesson notebooks and the book.

:class:`SoftmaxExplorer`, :class:`LowestLossExplorer` and :class:`MaskingSampler` compute in the
browser (anywidget ES modules), so they stay live in the static book with no kernel; their
Python side mirrors the same values in traits. :class:`MaskPredictExplorer` runs the pretrained
model and needs a kernel. Display a widget as the last expression of a notebook cell.
"""

from mlmcourse.widgets.lowest_loss_explorer import LowestLossExplorer
from mlmcourse.widgets.mask_predict import MaskPredictExplorer
from mlmcourse.widgets.masking_sampler import MaskingSampler
from mlmcourse.widgets.softmax_explorer import SoftmaxExplorer

__all__ = ["LowestLossExplorer", "MaskPredictExplorer", "MaskingSampler", "SoftmaxExplorer"]
