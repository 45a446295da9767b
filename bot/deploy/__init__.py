"""Deploy assistance: change sets from the code host and executors that start and follow deploys."""
