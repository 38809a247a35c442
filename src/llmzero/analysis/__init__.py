"""Analyses of finished searches, computed from their journals alone."""

from llmzero.analysis.dynamics import (
    EXPECTED,
    MONOTONE_MIN,
    OSCILLATING_MIN,
    DynamicsClass,
    ParamDynamics,
    Summary,
    analysed_paths,
    analyze_runs,
    classify,
    monotonicity,
    oscillation,
    path_params,
    plot_trajectories,
    rank_correlation,
    summarize,
    top_paths,
)

__all__ = ["EXPECTED", "MONOTONE_MIN", "OSCILLATING_MIN", "DynamicsClass", "ParamDynamics", "Summary",
           "analysed_paths", "analyze_runs", "classify", "monotonicity", "oscillation", "path_params",
           "plot_trajectories", "rank_correlation", "summarize", "top_paths"]
