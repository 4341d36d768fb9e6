"""The library: build, train and test a contractive CNODE. Nothing here knows the store or the chapters."""
