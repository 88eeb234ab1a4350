package etcd_test

func removeBuilds() {}
