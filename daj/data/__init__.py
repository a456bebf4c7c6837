"""daj.data"""
