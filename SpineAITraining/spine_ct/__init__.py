"""Spine CT: a CT phantom of the whole spine (C1 to the sacrum) on any field of view, for
training and checking a whole-spine vertebra model (segmentation and level naming from
anatomical anchors: skull base and dens, first and last ribs, sacrum).

``phantom.make_spine_ct`` draws and renders one case: CT (HU), vertebra labels (VerSe
numbers), rib labels (100/200 + the VerSe number of the rib's vertebra, left/right) and the
truth (levels in view, planted heights and Genant grades, trabecular HU, rib count, variants).
The anatomy lives in spine (levels, curves, variants, compressions), shapes (vertebrae,
sacrum), ribs, pelvis, limbs and body (soft tissues, organs); tissues holds the HU, imaging
the fast filters and noise; look writes quick-look pictures. The cervical phantom's building
blocks (signed distance shapes,
C1-C7, skull base, tissue table, image artefacts) are imported from SpineAITraining.cervical.

Only numpy is needed (no torch, no scipy); pillow for the quick look.
"""
