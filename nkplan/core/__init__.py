"""The pure core: records, desired state, diff, planner, plan, actions. No I/O."""
