"""Classical optical flow for the paper's Table 3 baselines: TV-L1 (our torch port of OpenCV's
DualTVL1, which opencv-python does not ship), Farneback and DIS (OpenCV), and flow colouring.

Every flow here is OpenCV's forward flow between two grey frames: I0(x) ~= I1(x + F(x)), [..., 0] = dx.
"""

from selfme.flow.classic import CLASSICAL_METHODS, classical_flow, dis_flow, farneback_flow, to_gray
from selfme.flow.tvl1 import TVL1Params, tvl1_flow
from selfme.flow.viz import flow_to_rgb

__all__ = ["CLASSICAL_METHODS", "TVL1Params", "classical_flow", "dis_flow", "farneback_flow", "flow_to_rgb",
           "to_gray", "tvl1_flow"]
