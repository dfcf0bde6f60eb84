package periodic_test

func runReplicaWorker() bool { return false }
