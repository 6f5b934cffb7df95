"""Agent runtimes beside the LangGraph graph: the OpenAI Agents SDK and CrewAI."""
