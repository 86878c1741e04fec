"""Renderers turn a Plan into text for people; they decide nothing."""
