build-dev/share-gateway/gateway.o: share-gateway/gateway.c fs/cidr.h \
 daemon/conf.h share-gateway/gw_daemon.h fs/token.h fs/iverr.h \
 share-gateway/gw_http.h share-gateway/gw_limits.h daemon/logline.h
fs/cidr.h:
daemon/conf.h:
share-gateway/gw_daemon.h:
fs/token.h:
fs/iverr.h:
share-gateway/gw_http.h:
share-gateway/gw_limits.h:
daemon/logline.h:
