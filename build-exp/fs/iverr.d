build-exp/fs/iverr.o: fs/iverr.c fs/iverr.h
fs/iverr.h:
