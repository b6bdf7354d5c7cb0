"""The problem objects (RFC 9457) routes answer with: made and rendered by the edge (`rnnserve.api.edge`), which
renders every error; these names stay here for the routes that build a problem of their own."""

from __future__ import annotations

from rnnserve.api.edge import PROBLEM_JSON, Problem, error_problem, problem, problem_response

__all__ = ["PROBLEM_JSON", "Problem", "error_problem", "problem", "problem_response"]
