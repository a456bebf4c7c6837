"""daj.eval"""
