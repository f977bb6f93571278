"""The label-free distillation proxy task (``build-supernet --task distill``)."""
