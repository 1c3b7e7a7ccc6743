"""What every trainer shares: the split by case (split), seeding, checkpoints and resume
(checkpoint), training-loop pieces (loop: learning-rate schedule, loss), metrics, TensorBoard
(tracking), several processes (distributed) and the bundle export (export)."""
