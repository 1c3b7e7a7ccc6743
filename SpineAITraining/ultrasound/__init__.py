"""Infant lumbar-puncture ultrasound: the synthetic cine generator (generator, anatomy, machines,
negatives), the classifier's data and splits (dataset), preprocessing, network, metrics,
thresholds and plots, the localiser (localise), and the two trainers (train_classifier:
``spineai-train lp-ultrasound``; train_localiser: ``spineai-train lp-ultrasound-localiser``).
"""
