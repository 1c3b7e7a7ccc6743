"""RSNA 2024 degenerative severity grading at the five lumbar disc levels.

``study`` reads a study's series and their geometry, ``grading`` cuts the 2.5-D crops
and runs the network, ``predict`` turns a bundle and points into the 25 graded rows,
``submission`` holds the Kaggle naming (conditions, levels, grades, row ids) and the CSV
writer. The training package (SpineAITraining.rsna2024) builds on these.
"""
