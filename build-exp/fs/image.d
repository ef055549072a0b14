build-exp/fs/image.o: fs/image.c fs/image.h fs/iverr.h fs/strip.h
fs/image.h:
fs/iverr.h:
fs/strip.h:
