"""ultrasound"""
