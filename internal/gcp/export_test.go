package gcp

// ProjectsUnderAtMost is NewProjectsUnder walking at most maxFolders
// folders.
var ProjectsUnderAtMost = projectsUnder
