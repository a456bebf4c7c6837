"""daj.judge"""
