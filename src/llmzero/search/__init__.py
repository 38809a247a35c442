"""Tree search over training trajectories: the tree, its journal, the methods and the loop."""

from llmzero.search.journal import Journal, JournalError
from llmzero.search.loop import JOURNAL, SearchRun, Status
from llmzero.search.tree import ROOT, Node, NodeState, Tree

__all__ = ["JOURNAL", "ROOT", "Journal", "JournalError", "Node", "NodeState", "SearchRun", "Status", "Tree"]
