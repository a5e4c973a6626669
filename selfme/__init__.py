"""SelfME: self-supervised motion learning for micro-expression recognition.

The package holds all the logic; ``stages/`` holds thin DVC stage scripts that call it.
"""

__version__ = "0.1.0"

#: The three classes of the MEGC2019 composite protocol, in label-id order.
CLASSES_3 = ("negative", "positive", "surprise")
