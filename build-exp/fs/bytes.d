build-exp/fs/bytes.o: fs/bytes.c fs/bytes.h
fs/bytes.h:
