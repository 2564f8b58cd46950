"""Matplotlib figures, one module per topic.  Every function returns a ``Figure`` and never calls
``show()``; none of them changes the matplotlib backend (in Jupyter the figures display inline;
the command line selects Agg).

- ``kernels``: correlation against depth, ResNet against its ODE limit;
- ``sde``: SDE paths and densities, limit against finite networks, ResNet-MLP equivalence;
- ``phase``: the two-layer ReLU phase diagram, slope heat map, condensation, RD against width;
- ``resnet_scaling``: trained ResNet weights against depth (max norm, paths, cumulative sums,
  the H1/H2 diagnostic).
"""
from .criticality import order_chaos, trainability
from .kernels import correlation_vs_depth, resnet_vs_ode
from .phase import condensation_picture, phase_diagram, rd_vs_width, slope_heatmap
from .resnet_scaling import (detrended_cumsums, hypothesis_diagnostic, max_norm_vs_depth,
                             patience_sensitivity, weight_paths)
from .sde import limit_vs_network, resnet_mlp_equivalence, sde_paths

__all__ = ["correlation_vs_depth", "resnet_vs_ode",
           "sde_paths", "limit_vs_network", "resnet_mlp_equivalence",
           "phase_diagram", "slope_heatmap", "condensation_picture", "rd_vs_width",
           "max_norm_vs_depth", "weight_paths", "detrended_cumsums", "hypothesis_diagnostic",
           "patience_sensitivity", "order_chaos", "trainability"]
