"""spine-ct: every vertebra of a CT's spine in view, segmented, named from anatomy or not at all, measured."""
