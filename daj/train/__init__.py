"""daj.train"""
